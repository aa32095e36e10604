-- The billing context finds refunds and disputes of a payment by its PaymentIntent too (since
-- basil a charge id is not always known).
CREATE INDEX refunds_intent ON refunds (payment_intent_id);
CREATE INDEX disputes_intent ON disputes (payment_intent_id);
