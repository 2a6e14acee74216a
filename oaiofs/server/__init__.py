"""oaiofs.server"""
