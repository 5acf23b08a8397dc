-- Per-market order and position limits (issue 20), published in GET /markets like Binance's
-- LOT_SIZE / MARKET_LOT_SIZE max quantity and Hyperliquid's max order value. Sizes are in the
-- base asset, notionals in USDM. The engine refuses an order above them (400 ORDER_SIZE_TOO_LARGE,
-- ORDER_NOTIONAL_TOO_LARGE; 422 POSITION_NOTIONAL_TOO_LARGE), and no fill builds a position above
-- max_position_notional: together they keep every money product far inside 64 bits.
ALTER TABLE markets
  ADD COLUMN max_order_size        numeric CHECK (max_order_size > 0),
  ADD COLUMN max_market_order_size numeric CHECK (max_market_order_size > 0),
  ADD COLUMN max_order_notional    numeric NOT NULL DEFAULT 50000000 CHECK (max_order_notional > 0 AND max_order_notional <= 1000000000),
  ADD COLUMN max_position_notional numeric NOT NULL DEFAULT 200000000 CHECK (max_position_notional > 0 AND max_position_notional <= 10000000000);

UPDATE markets SET max_order_size = 1000,      max_market_order_size = 100      WHERE symbol = 'BTC_USDM_PERP';
UPDATE markets SET max_order_size = 20000,     max_market_order_size = 2000     WHERE symbol = 'ETH_USDM_PERP';
UPDATE markets SET max_order_size = 300000,    max_market_order_size = 30000    WHERE symbol = 'SOL_USDM_PERP';
UPDATE markets SET max_order_size = 50000000,  max_market_order_size = 5000000  WHERE symbol = 'ADA_USDM_PERP';
-- Any other market: 1e6 of its base asset, a tenth of that for market orders.
UPDATE markets SET max_order_size = 1000000 WHERE max_order_size IS NULL;
UPDATE markets SET max_market_order_size = max_order_size / 10 WHERE max_market_order_size IS NULL;
ALTER TABLE markets ALTER COLUMN max_order_size SET NOT NULL, ALTER COLUMN max_market_order_size SET NOT NULL;
