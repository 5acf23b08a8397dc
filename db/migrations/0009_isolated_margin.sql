-- Isolated margin: the margin an isolated position holds (moved out of the account's collateral;
-- the ledger records it as ISOLATED_MARGIN). margin_mode has been a column since 0002.
ALTER TABLE positions ADD CONSTRAINT positions_margin_mode CHECK (margin_mode IN ('cross', 'isolated'));
ALTER TABLE positions ADD COLUMN isolated_margin numeric NOT NULL DEFAULT 0;
