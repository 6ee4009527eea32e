"""measure/aio"""
