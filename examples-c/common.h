/* Small helpers shared by the examples: the model path and a monotonic clock. */
#ifndef MINERVA_EXAMPLES_COMMON_H
#define MINERVA_EXAMPLES_COMMON_H
#define _DEFAULT_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The model: --model PATH, else $MINERVA_MODEL. */
static inline const char *example_model(const char *from_args) {
    const char *m = from_args ? from_args : getenv("MINERVA_MODEL");
    if (!m || !*m) {
        fprintf(stderr, "no model: pass --model PATH or set MINERVA_MODEL "
                        "(scripts/fetch-model.sh prints the default model's path)\n");
        exit(2);
    }
    return m;
}

static inline double seconds_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}
#endif
