// C11 threads through the pthread functions ThreadSanitizer intercepts. Linked into every executable of a
// thread-sanitized build (OUTBOX_SANITIZE=thread).
//
// librdkafka creates its threads and takes its locks with C11's thrd_create, mtx_lock, cnd_wait, call_once.
// glibc implements those by calling its own pthread code directly, past TSan's interceptors, so TSan never learns
// of librdkafka's threads (it crashes in the first allocation one makes) nor of its locks and condition variables
// (it would report the hand-over of every message between our thread and librdkafka's as a race). An executable's
// definitions take precedence over glibc's for the calls librdkafka makes; these forward each one to the pthread
// function of the same meaning, on the same object: glibc's mtx_t, cnd_t and once_flag are its pthread types.
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>
#include <time.h>

static int thrd_result(int rc) {
  switch (rc) {
    case 0: return thrd_success;
    case ENOMEM: return thrd_nomem;
    case ETIMEDOUT: return thrd_timedout;
    case EBUSY: return thrd_busy;
    default: return thrd_error;
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

int mtx_init(mtx_t* m, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  const int rc = pthread_mutex_init((pthread_mutex_t*)m, &attr);
  pthread_mutexattr_destroy(&attr);
  return thrd_result(rc);
}

int mtx_lock(mtx_t* m) { return thrd_result(pthread_mutex_lock((pthread_mutex_t*)m)); }
int mtx_trylock(mtx_t* m) { return thrd_result(pthread_mutex_trylock((pthread_mutex_t*)m)); }
int mtx_timedlock(mtx_t* restrict m, const struct timespec* restrict ts) {
  return thrd_result(pthread_mutex_timedlock((pthread_mutex_t*)m, ts));
}
int mtx_unlock(mtx_t* m) { return thrd_result(pthread_mutex_unlock((pthread_mutex_t*)m)); }
void mtx_destroy(mtx_t* m) { pthread_mutex_destroy((pthread_mutex_t*)m); }

int cnd_init(cnd_t* c) { return thrd_result(pthread_cond_init((pthread_cond_t*)c, NULL)); }
int cnd_signal(cnd_t* c) { return thrd_result(pthread_cond_signal((pthread_cond_t*)c)); }
int cnd_broadcast(cnd_t* c) { return thrd_result(pthread_cond_broadcast((pthread_cond_t*)c)); }
int cnd_wait(cnd_t* c, mtx_t* m) { return thrd_result(pthread_cond_wait((pthread_cond_t*)c, (pthread_mutex_t*)m)); }
int cnd_timedwait(cnd_t* restrict c, mtx_t* restrict m, const struct timespec* restrict ts) {
  return thrd_result(pthread_cond_timedwait((pthread_cond_t*)c, (pthread_mutex_t*)m, ts));
}
void cnd_destroy(cnd_t* c) { pthread_cond_destroy((pthread_cond_t*)c); }

void call_once(once_flag* flag, void (*func)(void)) { pthread_once((pthread_once_t*)flag, func); }
