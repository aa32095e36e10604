DROP TABLE sidebar_keys;
DROP TABLE sign_in_failures;
DROP TABLE web_sessions;
DROP TABLE users;
