/* Objective-C (plain C with @import) that imports minerva through the CMinerva module map (clang -fmodules), as Swift's ClangImporter
 * does, and runs a short greedy generation through it: the module map names the right header and
 * library, and the header is importable as a module (self-contained, no macros a module rejects). */
@import CMinerva;

#include <stdio.h>
#include <stdlib.h>

static minerva_control on_token(void *user_data, const char *text, size_t len) {
    size_t *n = user_data;
    *n += len;
    fwrite(text, 1, len, stdout);
    return MINERVA_CONTINUE;
}

int main(void) {
    const char *model = getenv("MINERVA_MODEL");
    if (!model) {
        fprintf(stderr, "MINERVA_MODEL is not set\n");
        return 2;
    }
    printf("ok - module CMinerva imported: minerva %s, ABI %u\n", minerva_version(), minerva_abi_version());
    minerva_engine *engine = NULL;
    if (minerva_engine_new(model, NULL, &engine) != MINERVA_OK) {
        fprintf(stderr, "not ok - engine: %s\n", minerva_last_error());
        return 1;
    }
    minerva_generate_params p;
    minerva_generate_params_init(&p, sizeof p);
    p.max_tokens = 8;
    p.temperature = 0;
    size_t n = 0;
    minerva_status st = minerva_generate(engine, "Swift is a programming language", &p, on_token, &n, NULL);
    printf("\n");
    minerva_engine_free(engine);
    if (st != MINERVA_OK || n == 0) {
        fprintf(stderr, "not ok - generate: %s\n", minerva_status_str(st));
        return 1;
    }
    printf("ok - generated %zu bytes through the module\n", n);
    return 0;
}
