# attnpool_set_warnings(<target>): warnings on for C++ and for the host side of CUDA sources,
# sanitizers on where ATTNPOOL_SANITIZE is set. Target-scoped, never global.
function(attnpool_set_warnings target)
  set(cxx_warnings -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion)
  if(ATTNPOOL_WERROR)
    list(APPEND cxx_warnings -Werror)
  endif()
  string(REPLACE ";" "," cuda_host_warnings "-Wall,-Wextra")
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:${cxx_warnings}>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${cuda_host_warnings}>)
  if(ATTNPOOL_SANITIZE)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined>)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
endfunction()
