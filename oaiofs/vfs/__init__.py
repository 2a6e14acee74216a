"""oaiofs.vfs"""
