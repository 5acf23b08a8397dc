-- Issue 23: what a held trigger order watches (mark, the default, or last: the last trade's price),
-- and whether it is a position's take-profit / stop-loss (POST /positions/{id}/tpsl: it goes when
-- the position closes or flips, and a pair cancel each other).
ALTER TABLE orders ADD COLUMN trigger_by text;
ALTER TABLE orders ADD COLUMN position_tpsl boolean NOT NULL DEFAULT false;
