/* SPDX-License-Identifier: MIT */
#include "counters.h"

struct counters counters;
