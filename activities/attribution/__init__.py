"""The attribution pipeline (seed 004 ML service): signed HubSpot webhooks, revenue attribution, Thompson-sampling
feedback, fatigue approvals and a winner index. Its pure parts come first; the workflows build on them."""
