// Run-time choice of the kernel set by CPU features, with a way to force a narrower one.
#pragma once
#include <string>
#include <vector>

#include "kernels_isa.hpp"

namespace sfcore {

// Names of the kernel sets this CPU can run, narrowest first ("scalar", "avx2", "avx512").
std::vector<std::string> available_isas();
// Forces a kernel set by name, or "auto" for the widest available. Throws std::invalid_argument
// for a name this CPU (or this build) cannot run.
void set_isa(const std::string& name);
// The kernel set in use now.
const Kernels& active_kernels();

}  // namespace sfcore
