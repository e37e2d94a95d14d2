# Menyu ya pochi (SIM toolkit, herufi 16 kwa mstari), Kiswahili.
#
# Msamiati:
#   Code 1     msimbo wa ombi la mpokeaji; Code 2: msimbo wa malipo wa mlipaji (majina haya kila mahali)
#   balance    salio
#   statement  taarifa fupi
#   sync       sawazisha (kutuma miamala kwa mtoa huduma na kupokea mapato)

purse-title = POCHI YA OFFPAY
purse-balance = Salio { $amount }
purse-item-receive = 1 Pokea pesa
purse-item-send = 2 Tuma pesa
purse-item-accept = 3 Weka Code 2
purse-item-show = 4 Code 2 iliyopita
purse-item-statement = 5 Taarifa fupi
purse-item-pending = 6 Maombi
purse-item-sync = 7 Sawazisha
purse-item-pin = 8 Badili PIN
purse-item-exit = 0 Toka
purse-choose = Chagua:
purse-last-payment = Malipo ya mwisho
purse-to = kwa { $who }
purse-from = kutoka { $who }
purse-from-operator = kutoka opereta
purse-to-operator = kwa opereta
purse-mini-statement = Taarifa fupi
purse-no-entries = Hakuna miamala
purse-pending = Maombi
purse-none = Hakuna
purse-synced = Imesawazishwa
purse-sent = { $count } imetumwa
purse-credits = mapato { $count }
purse-no-option = Hakuna chaguo { $choice }
purse-error = Hitilafu
purse-payer-number = Mlipaji (simu):
purse-amount = Kiasi:
purse-read-to-payer = Msomee mlipaji
purse-any-key = Kitufe: rudi
purse-payee-number = Mpokeaji (simu):
purse-key-or-number = Kitufe au namba:
purse-payees-code-1 = Code 1 mpokeaji:
purse-pay-question = Lipa { $amount }
purse-to-question = kwa { $payee }?
purse-pin = PIN:
purse-paid = Umelipa
purse-read-to-payee = Msomee mpokeaji
purse-code-1-first = Tarakimu 4 Code 1:
purse-received = Umepokea
purse-old-pin = PIN ya zamani:
purse-new-pin = PIN mpya:
purse-pin-changed = PIN imebadilika
purse-forgot-pin = * Nimesahau PIN
purse-reset-code = Msimbo wa upya:
purse-pin-reset = PIN imewekwa upya
