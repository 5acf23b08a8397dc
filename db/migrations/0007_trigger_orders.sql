-- Stop and take-profit orders (StopLimit, StopMarket, TakeProfitLimit, TakeProfitMarket): held as
-- `Untriggered` until the mark crosses trigger_price.
ALTER TABLE orders ADD COLUMN trigger_price numeric;
