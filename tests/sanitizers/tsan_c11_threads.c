// C11 thread creation through the pthread functions ThreadSanitizer intercepts. Linked into every executable of a
// thread-sanitized build (OUTBOX_SANITIZE=thread).
//
// librdkafka starts and joins its threads with C11's thrd_create and thrd_join. glibc implements those by calling
// its own pthread code directly, past TSan's interceptors, so TSan never learns of librdkafka's threads and crashes
// in the first allocation one of them makes. An executable's definitions take precedence over glibc's for the
// calls librdkafka makes; these start and join the thread with pthread_create and pthread_join. librdkafka's locks
// (mtx_t, cnd_t) stay glibc's and invisible to TSan, like the rest of that uninstrumented library
// (tests/sanitizers/tsan.supp).
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int thrd_result(int rc) {
  switch (rc) {
    case 0:
      return thrd_success;
    case ENOMEM:
      return thrd_nomem;
    case ETIMEDOUT:
      return thrd_timedout;
    case EBUSY:
      return thrd_busy;
    default:
      return thrd_error;
  }
}

struct thrd_start_args {
  thrd_start_t func;
  void* arg;
};

static void* thrd_trampoline(void* p) {
  struct thrd_start_args args = *(struct thrd_start_args*)p;
  free(p);
  return (void*)(intptr_t)args.func(args.arg);
}

int thrd_create(thrd_t* thr, thrd_start_t func, void* arg) {
  struct thrd_start_args* args = malloc(sizeof *args);
  if (args == NULL) return thrd_nomem;
  args->func = func;
  args->arg = arg;
  pthread_t t;
  const int rc = pthread_create(&t, NULL, thrd_trampoline, args);
  if (rc != 0) {
    free(args);
    return thrd_result(rc);
  }
  *thr = (thrd_t)t;
  return thrd_success;
}

int thrd_join(thrd_t thr, int* res) {
  void* r = NULL;
  const int rc = pthread_join((pthread_t)thr, &r);
  if (rc == 0 && res != NULL) *res = (int)(intptr_t)r;
  return thrd_result(rc);
}

int thrd_detach(thrd_t thr) { return thrd_result(pthread_detach((pthread_t)thr)); }
