/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * Resize an 8-bit single-channel image as Pillow's Image.resize(size,
 * BILINEAR) does for mode "L" (what torchvision's Resize applies to a PIL
 * image): triangle filter widened by the scale factor when shrinking,
 * horizontal pass then vertical pass, fixed-point coefficients with 22
 * fractional bits and rounding to 8 bits after each pass.  Main thread
 * (allocates its coefficient tables).  Returns 0 or -EINVAL / -ENOMEM.
 */
int mead_resize_u8(const uint8_t *src, uint32_t src_w, uint32_t src_h,
		   uint8_t *dst, uint32_t dst_w, uint32_t dst_h);

