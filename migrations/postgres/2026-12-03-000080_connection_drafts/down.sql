DROP TABLE connection_drafts;
