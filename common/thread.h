// Threads are std::jthread (joined on destruction, with a stop token); namedThread() also
// gives the thread a name that shows in top, gdb and /proc.
#pragma once

#include <stop_token>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace flotilla {

// Sets the calling thread's name (truncated to the kernel's 15 characters).
void setCurrentThreadName(std::string_view name);

// Starts `fn` on a new named thread. `fn` takes a std::stop_token or nothing.
template <typename Fn>
std::jthread namedThread(std::string name, Fn&& fn) {
  return std::jthread(
      [name = std::move(name), fn = std::forward<Fn>(fn)](std::stop_token stop) mutable {
        setCurrentThreadName(name);
        if constexpr (std::is_invocable_v<Fn&, std::stop_token>) {
          fn(std::move(stop));
        } else {
          fn();
        }
      });
}

}  // namespace flotilla
