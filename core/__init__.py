"""What the web app and the controller share: settings, the database (models, migrations, data access),
the video status, the cost model, webhooks' outbox, and the errors a user sees. Neither imports the other."""
