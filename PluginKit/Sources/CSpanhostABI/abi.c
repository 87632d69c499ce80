/* The plugin ABI as a module: the public header only. SwiftPM needs one source file per C
 * target; this one is it. */
#include "spanhost/spanhost.h"
