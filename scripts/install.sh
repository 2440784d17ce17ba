#!/usr/bin/env bash
# Installs everything the build, the tests and the local services need. Idempotent.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

packages=(
  build-essential cmake ninja-build pkg-config git
  librdkafka-dev libpq-dev libpqxx-dev libasio-dev libyaml-cpp-dev nlohmann-json3-dev
  libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev libsqlite3-dev libhiredis-dev libcurl4-openssl-dev libssl-dev
  postgresql-15 postgresql-client-15 redis-server kcat prometheus python3-confluent-kafka
  libjemalloc-dev default-jre-headless maven clang-format clang-tidy clang-14 libclang-rt-14-dev python3 python3-yaml procps openssl xz-utils unzip
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
# A JDK from elsewhere also does: only install a JRE when there is no java at all.
if command -v java >/dev/null 2>&1; then
  missing=("${missing[@]/default-jre-headless/}")
fi
if command -v mvn >/dev/null 2>&1; then
  missing=("${missing[@]/maven/}")
fi
read -r -a missing <<<"${missing[*]}"

if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The Debian redis-server and postgresql packages start system-wide services; the project runs its own.
else
  log "Debian packages: all present"
fi

# Apache Kafka broker jars, resolved through Maven from scripts/kafka/pom.xml, cached outside the tree.
marker=$KAFKA_LIBS/.complete
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$(sha256sum "$OUTBOX_ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1)" ]; then
  log "Kafka $KAFKA_VERSION jars: cached in $KAFKA_LIBS"
else
  log "resolving Kafka $KAFKA_VERSION jars with Maven into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$OUTBOX_ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime
  sha256sum "$OUTBOX_ROOT/scripts/kafka/pom.xml" | cut -d' ' -f1 >"$marker"
fi

# Kafka's Java console consumer and producer (kafka-tools) at the broker's version, for tests that read with a
# client no one here wrote.
tools_pom=$OUTBOX_ROOT/scripts/kafka-tools/pom.xml
grep -q "<kafka.version>$KAFKA_VERSION</kafka.version>" "$tools_pom" \
  || die "scripts/kafka-tools/pom.xml: kafka.version differs from scripts/kafka/pom.xml ($KAFKA_VERSION)"
marker=$KAFKA_TOOLS_LIBS/.complete
if [ -f "$marker" ] && [ "$(cat "$marker")" = "$(sha256sum "$tools_pom" | cut -d' ' -f1)" ]; then
  log "Kafka $KAFKA_VERSION tools: cached in $KAFKA_TOOLS_LIBS"
else
  log "resolving Kafka $KAFKA_VERSION tools with Maven into $KAFKA_TOOLS_LIBS"
  rm -rf "$KAFKA_TOOLS_LIBS"
  mkdir -p "$KAFKA_TOOLS_LIBS"
  mvn -q -B -f "$tools_pom" dependency:copy-dependencies -DoutputDirectory="$KAFKA_TOOLS_LIBS" -DincludeScope=runtime
  sha256sum "$tools_pom" | cut -d' ' -f1 >"$marker"
fi

# PostgreSQL servers beside Debian's 15, one directory per version: $OUTBOX_CACHE/postgresql-<version>
# with bin/ (initdb, pg_ctl, postgres), lib/ (its own libraries and pgoutput) and share/. The jar
# comes through Maven (scripts/postgres/pom.xml pins the versions); OUTBOX_PG_VERSIONS picks them.
for major in $OUTBOX_PG_VERSIONS; do
  [ "$major" = 15 ] && continue
  version=$(pg_dist_version "$major")
  [ -n "$version" ] || die "OUTBOX_PG_VERSIONS: no PostgreSQL $major pinned in scripts/postgres/pom.xml (14 15 16 17 18)"
  dir=$(pg_dist_dir "$major")
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$version" ]; then
    log "PostgreSQL $version: cached in $dir"
    continue
  fi
  log "resolving PostgreSQL $version with Maven into $dir"
  artifact=$(sed -n 's:.*<postgresql.artifact>\(.*\)</postgresql.artifact>.*:\1:p' "$PG_POM")
  rm -rf "$dir" "$dir.jar"
  mkdir -p "$dir.jar"
  mvn -q -B -Dstyle.color=never -f "$PG_POM" dependency:copy -Dartifact="$artifact:$version" -DoutputDirectory="$dir.jar"
  mkdir -p "$dir"
  unzip -p "$dir.jar"/*.jar '*.txz' | tar -xJ -C "$dir"
  rm -rf "$dir.jar"
  "$dir/bin/postgres" --version | grep -q " $major\." || die "$dir/bin/postgres is not PostgreSQL $major"
  [ -f "$dir/lib/postgresql/pgoutput.so" ] || die "$dir has no pgoutput"
  echo "$version" >"$dir/.complete"
done
