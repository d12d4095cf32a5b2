/* Built against an installed minerva by tests/packaging.rs (pkg-config and CMake, shared and
 * static). Prints the CPU backend chosen, then eight greedy tokens of the model given. */
#include <minerva.h>
#include <stdio.h>
#include <string.h>

static minerva_control on_token(void *user_data, const char *text, size_t len) {
    size_t *total = user_data;
    *total += len;
    fwrite(text, 1, len, stdout);
    return MINERVA_CONTINUE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    if (minerva_abi_version() != MINERVA_ABI_VERSION) {
        fprintf(stderr, "ABI %u, header %u\n", minerva_abi_version(), MINERVA_ABI_VERSION);
        return 1;
    }
    minerva_engine_params ep;
    minerva_engine_params_init(&ep, sizeof ep);
    ep.max_streams = 1;
    ep.context_tokens = 256;
    minerva_engine *engine;
    if (minerva_engine_new(argv[1], &ep, &engine) != MINERVA_OK) {
        fprintf(stderr, "engine: %s\n", minerva_last_error());
        return 1;
    }
    minerva_engine_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    minerva_engine_get_info(engine, &info);
    printf("cpu: %s\n", info.cpu_variant);
    minerva_generate_params p;
    minerva_generate_params_init(&p, sizeof p);
    p.max_tokens = 8;
    p.temperature = 0;
    size_t total = 0;
    printf("text: ");
    minerva_status st = minerva_generate(engine, "The capital of France is", &p, on_token, &total, NULL);
    printf("\n");
    minerva_engine_free(engine);
    if (st != MINERVA_OK || total == 0) {
        fprintf(stderr, "generate: %s (%s)\n", minerva_status_str(st), minerva_last_error());
        return 1;
    }
    return 0;
}
