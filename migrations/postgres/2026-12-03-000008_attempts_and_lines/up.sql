-- Every attempt (charge) of a payment, so support can answer "why was my card declined" after a
-- later attempt succeeded. Rebuilt with its payment from the payment's events.
CREATE TABLE payment_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    payment_stripe_id TEXT NOT NULL,
    charge_id TEXT NOT NULL,
    status TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    failure_code TEXT,
    decline_code TEXT,
    failure_message TEXT,
    method_type TEXT,
    card_brand TEXT,
    card_last4 TEXT,
    stripe_created TIMESTAMP,
    UNIQUE (connection_id, charge_id)
);
CREATE INDEX payment_attempts_payment ON payment_attempts (payment_stripe_id);

-- Stripe's event payloads cut an invoice's lines at the first page (`has_more: true`). A mirrored
-- invoice whose known lines are such a page has a row here until a job has read the rest.
CREATE TABLE incomplete_invoice_lines (
    invoice_id TEXT PRIMARY KEY NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    connection_id TEXT NOT NULL REFERENCES connections (id),
    stripe_invoice_id TEXT NOT NULL,
    known_lines INTEGER NOT NULL
);
