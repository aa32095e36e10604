DROP TABLE invoice_pdfs;
