DROP TABLE incomplete_invoice_lines;
DROP INDEX payment_attempts_payment;
DROP TABLE payment_attempts;
