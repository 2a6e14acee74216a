"""oaiofs.client"""
