// hydrox/core/gcra.hpp: a burst, then the sustained rate; the headers' numbers; bounded memory.
#include <gtest/gtest.h>

#include "hydrox/core/gcra.hpp"

using hydrox::Gcra;

TEST(Gcra, ABurstThenOneRequestPerInterval) {
  Gcra g;
  const Gcra::Limit five_per_min{5, 12'000};  // burst 5, then one every 12 s
  double now = 1'000'000;
  for (int i = 0; i < 5; ++i) {
    auto d = g.take("user:a", five_per_min, now);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 4 - i);
  }
  auto refused = g.take("user:a", five_per_min, now);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.retry_after_s, 12);  // one interval until the next request
  EXPECT_EQ(refused.reset_s, 60);        // five intervals until full
  // Another key is its own bucket.
  EXPECT_TRUE(g.take("user:b", five_per_min, now).allowed);
  // Just before one interval has passed: still refused; at it: allowed, and only one.
  EXPECT_FALSE(g.take("user:a", five_per_min, now + 11'999).allowed);
  EXPECT_TRUE(g.take("user:a", five_per_min, now + 12'000).allowed);
  EXPECT_FALSE(g.take("user:a", five_per_min, now + 12'000).allowed);
  // A long pause refills to the burst, not beyond it.
  now += 10'000'000;
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += g.take("user:a", five_per_min, now).allowed;
  EXPECT_EQ(allowed, 5);
}

TEST(Gcra, AFractionalShareAllowsAtLeastOneAndRoundsTheRestDown) {
  Gcra g;
  // A burst of 5 divided between two gateways: 2.5 each.
  const Gcra::Limit half{2.5, 24'000};
  int allowed = 0;
  for (int i = 0; i < 10; ++i) allowed += g.take("k", half, 0).allowed;
  EXPECT_EQ(allowed, 2);
  const Gcra::Limit tiny{0.2, 1000};  // less than one: still one request
  EXPECT_TRUE(g.take("t", tiny, 0).allowed);
  EXPECT_FALSE(g.take("t", tiny, 0).allowed);
}

TEST(Gcra, MemoryIsBoundedAndFullBucketsAreForgotten) {
  Gcra g;
  const Gcra::Limit l{10, 1000};
  for (int i = 0; i < 20'000; ++i) g.take("ip:" + std::to_string(i), l, 0);
  EXPECT_EQ(g.keys(), 20'000u);
  // 20 s later every bucket is full again: a shard's next request prunes it (1,000 new keys
  // reach every shard).
  for (int i = 0; i < 1000; ++i) g.take("later:" + std::to_string(i), l, 20'000);
  EXPECT_EQ(g.keys(), 1000u);
  // Far more keys than the bound: never more than 16 × kMaxKeysPerShard kept, and a throttled
  // key is not among those dropped (spraying new keys does not reset it).
  Gcra h;
  const Gcra::Limit strict{2, 60'000};
  h.take("victim", strict, 0);
  h.take("victim", strict, 0);
  ASSERT_FALSE(h.take("victim", strict, 0).allowed);
  for (std::size_t i = 0; i < 16 * Gcra::kMaxKeysPerShard + 5000; ++i) h.take(std::to_string(i), l, 1);
  EXPECT_LE(h.keys(), 16 * Gcra::kMaxKeysPerShard);
  EXPECT_FALSE(h.take("victim", strict, 2).allowed);
}
