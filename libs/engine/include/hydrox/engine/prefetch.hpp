#pragma once
// A cache-line prefetch that the compiler keeps. GCC 12 drops __builtin_prefetch (and
// _mm_prefetch) when the address comes from a multiply-xorshift hash like the engine's (checked
// with objdump: the function compiled to a bare `ret`), so on x86-64 it is an asm statement.

namespace hydrox::engine {

inline void prefetch_line(const void* p) {
#if defined(__x86_64__)
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
#else
  __builtin_prefetch(p);
#endif
}

}  // namespace hydrox::engine
