"""The job contract shared by the service and the job pods: object storage and records."""
