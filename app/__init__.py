"""Hirehook: receive, verify, deduplicate and enrich events from Applicant Tracking Systems."""
