# attnpool_set_cuda_flags(<target>): the device-code flags of every target with CUDA sources (the
# library, and benchmarks that compile an agent of their own), so that they build the same code.
function(attnpool_set_cuda_flags target)
  # C++20 in device code too. CMake < 3.26 (our minimum is 3.25) does not know nvcc's C++20
  # flag, so fall back to passing it ourselves there.
  if(DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set_target_properties(${target} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON
      CUDA_EXTENSIONS OFF)
  else()
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  endif()
  # -lineinfo: source lines in compute-sanitizer and Nsight reports, at no runtime cost.
  # --expt-relaxed-constexpr: the shared maths (include/attnpool/detail/) uses
  # std::numeric_limits<float>::infinity(), a constexpr host function, from __host__ __device__
  # code; without the flag nvcc warns (#20013-D) on every use.
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo --expt-relaxed-constexpr>)
endfunction()
