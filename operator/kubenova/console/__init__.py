"""Consoles (Nova's consoleauth and console proxy): who may open an instance's console.

:mod:`kubenova.console.auth` hands out console tokens and decides, once per token, whether one
opens a console and where that console is, so whatever serves consoles asks it before it
connects anything and keeps no token state of its own.
"""
