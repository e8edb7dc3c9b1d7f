-- The newest stored event id of one stream (0 when none): a Last-Event-ID above it (and above
-- the server's id clock) is unknown here, and the client is told to resync.
SELECT max(id) AS newest FROM {db}.live_events WHERE stream = {stream:String}
