-- Orders belong to someone: the token's subject that placed them. An
-- Idempotency-Key is one customer's: two customers may use the same key
-- without seeing each other's answers. Rows from before identity existed
-- belong to '' (only an admin reads them).
ALTER TABLE idempotency_keys ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (owner, key);

ALTER TABLE orders ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE orders DROP CONSTRAINT orders_idempotency_key_key;
ALTER TABLE orders ADD CONSTRAINT orders_owner_idempotency_key_key UNIQUE (owner, idempotency_key);
