#include "hydrox/core/secret.hpp"

namespace hydrox {

bool constant_time_equal(std::string_view given, std::string_view secret) {
  // Every byte of the secret is read whatever `given` holds.
  unsigned char diff = given.size() == secret.size() ? 0 : 1;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    const unsigned char x = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ static_cast<unsigned char>(secret[i]));
  }
  return diff == 0;
}

}  // namespace hydrox
