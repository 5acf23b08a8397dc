-- Foundation schema: listed markets with their rules, users, and the vault catalogue with the
-- protocol vault. Money and sizes are NUMERIC here (exact); the services convert them to
-- fixed-point integers (perp-rules.md "Units and rounding").

CREATE TABLE markets (
  id              integer PRIMARY KEY,
  symbol          text NOT NULL UNIQUE,
  base_asset      text NOT NULL,
  quote_asset     text NOT NULL DEFAULT 'USDM',
  tick_size       numeric NOT NULL CHECK (tick_size > 0),
  lot_size        numeric NOT NULL CHECK (lot_size > 0),
  min_notional    numeric NOT NULL CHECK (min_notional >= 0),
  max_leverage    integer NOT NULL CHECK (max_leverage BETWEEN 1 AND 200),
  maker_fee_rate  numeric NOT NULL DEFAULT 0.0002,
  taker_fee_rate  numeric NOT NULL DEFAULT 0.0005,
  impact_notional numeric NOT NULL DEFAULT 10000,
  index_start_price numeric NOT NULL,   -- the development price feed starts here
  index_volatility  numeric NOT NULL,   -- per-second standard deviation of the simulated walk
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'halted', 'delisted')),
  created_at      timestamptz NOT NULL DEFAULT now()
);

INSERT INTO markets (id, symbol, base_asset, tick_size, lot_size, min_notional, max_leverage,
                     index_start_price, index_volatility) VALUES
  (1, 'BTC_USDM_PERP', 'BTC', 0.1,    0.001, 10, 40, 97250.5, 0.0002),
  (2, 'ETH_USDM_PERP', 'ETH', 0.01,   0.01,  10, 25, 3650.25, 0.0003),
  (3, 'SOL_USDM_PERP', 'SOL', 0.001,  0.1,   10, 20, 245.125, 0.0004),
  (4, 'ADA_USDM_PERP', 'ADA', 0.0001, 1,     10, 20, 1.0512,  0.0004);

CREATE TABLE users (
  id             uuid PRIMARY KEY,
  wallet_address text NOT NULL,
  chain          text NOT NULL CHECK (chain IN ('cardano', 'ethereum', 'system')),
  created_at     timestamptz NOT NULL DEFAULT now(),
  UNIQUE (chain, wallet_address)
);

-- System accounts are users too, so that every USDM unit has an owner (perp-rules invariants).
INSERT INTO users (id, wallet_address, chain) VALUES
  ('00000000-0000-7000-8000-000000000001', 'system:fees', 'system'),
  ('00000000-0000-7000-8000-000000000002', 'system:insurance', 'system'),
  ('00000000-0000-7000-8000-000000000003', 'system:protocol-vault', 'system');

CREATE TABLE vaults (
  id               uuid PRIMARY KEY,
  name             text NOT NULL UNIQUE,
  description      text NOT NULL DEFAULT '',
  address          text NOT NULL,
  leader_user_id   uuid NOT NULL REFERENCES users(id),
  account_user_id  uuid NOT NULL REFERENCES users(id),  -- the trading account the vault owns
  lock_period_days integer NOT NULL DEFAULT 1 CHECK (lock_period_days >= 0),
  performance_fee  numeric NOT NULL DEFAULT 10 CHECK (performance_fee BETWEEN 0 AND 100),
  management_fee   numeric NOT NULL DEFAULT 0 CHECK (management_fee BETWEEN 0 AND 100),
  min_deposit      numeric NOT NULL DEFAULT 10,
  capacity         numeric NOT NULL DEFAULT 10000000,
  is_protocol      boolean NOT NULL DEFAULT false,
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
  created_at       timestamptz NOT NULL DEFAULT now()
);

-- The protocol vault: the market maker quotes for it and it is the liquidation backstop.
INSERT INTO vaults (id, name, description, address, leader_user_id, account_user_id,
                    lock_period_days, performance_fee, is_protocol) VALUES
  ('00000000-0000-7000-8000-0000000000a1', 'HydroX Liquidity Provider',
   'Protocol vault: provides liquidity on every market and backstops liquidations.',
   'vault:hlp', '00000000-0000-7000-8000-000000000003', '00000000-0000-7000-8000-000000000003',
   4, 0, true);
