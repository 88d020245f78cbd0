# Chooses CMAKE_CUDA_ARCHITECTURES before enable_language(CUDA), tiny-cuda-nn style:
#   1. an explicit -DCMAKE_CUDA_ARCHITECTURES=... always wins (CI builds one: 90);
#   2. else the compute capability of the GPUs that nvidia-smi reports on this machine;
#   3. else 90 (H100/H200, the GPUs we tune for). Releases pass the full list:
#      -DCMAKE_CUDA_ARCHITECTURES="75;80;86;89;90;100;120".
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(_archs "")
  find_program(_nvidia_smi nvidia-smi)
  if(_nvidia_smi)
    execute_process(COMMAND ${_nvidia_smi} --query-gpu=compute_cap --format=csv,noheader
      OUTPUT_VARIABLE _caps RESULT_VARIABLE _rc ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(_rc EQUAL 0 AND _caps)
      string(REPLACE "." "" _caps "${_caps}")
      string(REPLACE "\n" ";" _archs "${_caps}")
      list(REMOVE_DUPLICATES _archs)
    endif()
  endif()
  if(NOT _archs)
    set(_archs 90)
  endif()
  set(CMAKE_CUDA_ARCHITECTURES "${_archs}" CACHE STRING "CUDA architectures to build for")
endif()
message(STATUS "attnpool: CUDA architectures: ${CMAKE_CUDA_ARCHITECTURES}")
