"""tokenrelay's services. Dependencies point inward: services → core → schemas."""
