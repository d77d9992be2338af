"""dlt sources for Jira, GitHub, Jenkins, Datadog and Mixpanel, and the HTTP layer they share."""
