# cmake -DINPUT=<file> -DOUTPUT=<file.cpp> -P embed_file.cmake
# Writes the bytes of INPUT as the C array attnpool_embedded_font (see text.cpp).
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
# 32 bytes per line keeps the generated file readable and the compiler's lines short.
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}"
  "// Generated from ${INPUT} by embed_file.cmake; do not edit.\n"
  "extern \"C\" const unsigned char attnpool_embedded_font[] = {\n${bytes}\n};\n"
  "extern \"C\" const unsigned long attnpool_embedded_font_size = ${size};\n")
