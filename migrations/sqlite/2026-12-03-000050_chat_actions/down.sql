DROP TABLE notify_rules_version;
DROP TABLE notify_ops_alerts;
DROP TABLE customer_follow_ups;
DROP TABLE notify_chat_actions;
DROP TABLE notify_slack_users;
DROP TABLE notify_interactivity;
