DROP INDEX refunds_intent;
DROP INDEX disputes_intent;
