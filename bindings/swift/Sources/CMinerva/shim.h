/* The umbrella header of the CMinerva module: minerva's C API as installed. */
#include <minerva.h>
