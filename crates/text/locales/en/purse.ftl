# The purse menu (SIM toolkit, 16 characters a line), English.
#
# Glossary:
#   Code 1     the payee's request code; Code 2: the payer's payment code (named so everywhere)
#   balance    Bal (short, the display is narrow)
#   statement  mini statement
#   sync       sending entries to the operator and fetching credits

purse-title = OFFPAY PURSE
purse-balance = Bal { $amount }
purse-item-receive = 1 Receive money
purse-item-send = 2 Send money
purse-item-accept = 3 Enter Code 2
purse-item-show = 4 Show last Code 2
purse-item-statement = 5 Mini statement
purse-item-pending = 6 Pending requests
purse-item-sync = 7 Sync
purse-item-pin = 8 Change PIN
purse-item-exit = 0 Exit
purse-choose = Choose:
purse-last-payment = Last payment
purse-to = to { $who }
purse-from = from { $who }
purse-from-operator = from operator
purse-to-operator = to operator
purse-mini-statement = Mini statement
purse-no-entries = No entries
purse-pending = Pending
purse-none = None
purse-synced = Synced
purse-sent = { $count } sent
purse-credits = { $count } credit(s)
purse-no-option = No option { $choice }
purse-error = Error
purse-payer-number = Payer number:
purse-amount = Amount:
purse-read-to-payer = Read it to payer
purse-any-key = Any key: back
purse-payee-number = Payee number:
purse-key-or-number = Key or number:
purse-payees-code-1 = Payee's Code 1:
purse-pay-question = Pay { $amount }
purse-to-question = to { $payee }?
purse-pin = PIN:
purse-paid = Paid
purse-read-to-payee = Read it to payee
purse-code-1-first = Code 1 first 4 digits:
purse-received = Received
purse-old-pin = Old PIN:
purse-new-pin = New PIN:
purse-pin-changed = PIN changed
purse-forgot-pin = * Forgot PIN
purse-reset-code = Reset code:
purse-pin-reset = PIN reset
