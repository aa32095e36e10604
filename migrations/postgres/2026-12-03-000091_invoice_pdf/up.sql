-- Stripe's PDF of a finalized invoice (`invoice_pdf`), so staff can open it from the invoice's
-- page beside the hosted page. A table of its own: `invoices` has diesel's 32 columns already.
CREATE TABLE invoice_pdfs (
    invoice_id TEXT PRIMARY KEY NOT NULL REFERENCES invoices (id),
    url TEXT NOT NULL
);
