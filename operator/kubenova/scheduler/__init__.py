"""nova-scheduler and placement: filters, weighers and race-free claims."""
