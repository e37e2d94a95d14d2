# Kurasa za tovuti za mwenye akaunti, Kiswahili.
#
# Msamiati:
#   envelope   bahasha (karatasi ya TAN)
#   row        mstari; "cross out" = kata mstari
#   TAN        msimbo wa tarakimu 3 wa mstari
#   balance    salio
#   statement  taarifa ya akaunti

web-title-login = Ingia
web-title-statement = Taarifa ya akaunti
web-title-payment = Malipo
web-your-account = Akaunti yako
web-account-number = Namba ya akaunti
web-password = Nenosiri (liweke kwa SMS: PASSWORD bahasha mstari SUM nenosiri)
web-unused-row = Mstari wa bahasha yako ambao haujatumika
web-its-tan = TAN ya mstari huo
web-log-in = Ingia
web-login-uses-row = Mstari huu unatumika unapoingia: ukate.
web-login-failed = Imeshindikana kuingia: namba ya akaunti, nenosiri, mstari au TAN si sahihi.
web-form-expired = Muda wa fomu ya kuingia umekwisha. Tafadhali jaribu tena.
web-envelope-busy = Bahasha yako ilikuwa inatumika. Tafadhali jaribu tena kwa mstari mwingine.
web-login-blocked = Kuingia kwenye tovuti kumezuiwa baada ya manenosiri mengi yasiyo sahihi. Weka jipya kwa SMS: PASSWORD bahasha mstari SUM nenosiri.
web-envelope-locked = Bahasha yako imefungwa baada ya misimbo mingi isiyo sahihi. Nenda kwa wakala na kitambulisho chako.
web-row-used = Mstari huo ulishatumika. Tumia mstari ambao hujaukata.
web-account-heading = Akaunti { $number }
web-balance = Salio:
web-column-date = Tarehe
web-column-counterparty = Upande mwingine
web-column-what = Maelezo
web-column-reference = Kumbukumbu
web-column-amount = Kiasi
web-column-fee = Ada
web-counterparty-cash = taslimu
web-counterparty-exchange = ubadilishaji
web-counterparty-fee = ada
web-older = Miamala ya zamani zaidi
web-pay-heading = Lipa
web-payee = Namba ya akaunti ya mpokeaji
web-amount = Kiasi
web-pay = Lipa
web-pay-uses-row = Mstari huu unatumika unapolipa: ukate.
web-log-out = Toka
web-payment-heading = Malipo
web-back = Rudi kwenye taarifa
web-paid = UMELIPA { $amount } REF { $reference }
web-language = Lugha:
