DROP TABLE notify_deliveries;
DROP TABLE notify_rules;
DROP TABLE notify_channels;
