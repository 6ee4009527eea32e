"""measure/deepspeed"""
