// The header in a C++ program: it compiles with -std=c++11 -pedantic and links.
#include "minerva.h"

#include <cstdio>
#include <cstring>

int main() {
    minerva_engine_params p;
    minerva_engine_params_init(&p, sizeof p);
    minerva_generate_params g;
    minerva_generate_params_init(&g, sizeof g);
    if (p.max_streams != 4 || g.max_tokens != 256 || g.seed != MINERVA_SEED_RANDOM) return 1;
    if (minerva_abi_version() != MINERVA_ABI_VERSION) return 1;
    minerva_engine *e = nullptr;
    if (minerva_engine_new(nullptr, &p, &e) != MINERVA_ERR_INVALID_ARGUMENT || e) return 1;
    if (std::strstr(minerva_last_error(), "model_path") == nullptr) return 1;
    std::printf("minerva %s from C++\n", minerva_version());
    return 0;
}
