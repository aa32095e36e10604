DROP TABLE stripe_key_epochs;
