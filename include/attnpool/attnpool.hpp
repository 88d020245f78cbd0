/// \file
/// Umbrella header: the whole host API of attnpool.
#pragma once

#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/multi_gpu.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/reference.hpp>
#include <attnpool/types.hpp>
#include <attnpool/version.hpp>
