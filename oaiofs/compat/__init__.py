"""Plugins that let other systems' unmodified clients use oaiofs (optional extras, never imported by oaiofs)."""
