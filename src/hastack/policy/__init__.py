"""The pure decision core: functions of plain data, no I/O, no clock, never raising on odd input."""
