# Every third-party dependency, found once, as imported targets.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(RDKAFKAXX REQUIRED IMPORTED_TARGET rdkafka++)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
find_package(yaml-cpp REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)

# Standalone Asio ships headers only and no package config.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
add_library(outbox_asio INTERFACE)
target_include_directories(outbox_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
target_compile_definitions(outbox_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED)
target_link_libraries(outbox_asio INTERFACE Threads::Threads)
add_library(outbox::asio ALIAS outbox_asio)

if(OUTBOX_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()
if(OUTBOX_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
endif()
